//! Checks of the op log: seqs, re-pushes, conflicts, paging, spaces, users.

use super::*;

pub fn append_assigns_gap_free_seqs_from_one<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    assert_eq!(store.head("crm").unwrap(), 0);
    assert_eq!(append_ok(store, "crm", &[]), Vec::<Seq>::new());
    assert_eq!(store.head("crm").unwrap(), 0);
    let first = new_ops(3);
    assert_eq!(append_ok(store, "crm", &first), [1, 2, 3]);
    assert_eq!(store.head("crm").unwrap(), 3);
    let second = new_ops(2);
    assert_eq!(append_ok(store, "crm", &second), [4, 5]);
    assert_eq!(store.head("crm").unwrap(), 5);
    assert_eq!(append_ok(store, "crm", &[]), Vec::<Seq>::new());
    let all = everything(store, "crm");
    assert_eq!(seqs_of(&all), [1, 2, 3, 4, 5]);
    let ops: Vec<StoredOp> = all.into_iter().map(|(_, op)| op).collect();
    assert_eq!(ops, [first, second].concat());
}

pub fn a_repushed_op_keeps_its_first_seq<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(3);
    assert_eq!(append_ok(store, "crm", &ops[..2]), [1, 2]);
    assert_eq!(
        append_ok(store, "crm", &ops[1..]),
        [2, 3],
        "the known op keeps 2, the new one gets 3"
    );
    assert_eq!(append_ok(store, "crm", &ops[..1]), [1]);
    assert_eq!(store.head("crm").unwrap(), 3, "a re-push does not move the head");
    assert_eq!(append_ok(store, "crm", &ops), [1, 2, 3]);

    // The same op pushed again by someone else is the same op: the first stamp stays.
    let by_bob = stored(&ops[0].op, "bob");
    assert_eq!(append_ok(store, "crm", &[by_bob]), [1]);
    let all = everything(store, "crm");
    assert_eq!(seqs_of(&all), [1, 2, 3]);
    assert_eq!(all[0].1, ops[0]);

    let more = new_ops(1);
    assert_eq!(append_ok(store, "crm", &[ops[2].clone(), more[0].clone()]), [3, 4]);
    assert_eq!(store.head("crm").unwrap(), 4);
}

pub fn each_append_marks_its_ops<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    assert_eq!(store.mark("crm", Seq(0)).unwrap(), None, "no op at seq 0");
    assert_eq!(store.mark("crm", Seq(1)).unwrap(), None, "no op yet");
    let first = new_ops(2);
    append_ok(store, "crm", &first);
    let second = new_ops(1);
    append_ok(store, "crm", &second);
    let marks: Vec<u64> = (1..=3)
        .map(|seq| store.mark("crm", Seq(seq)).unwrap().expect("an op"))
        .collect();
    assert_eq!(marks[0], marks[1], "one append, one mark");
    assert_ne!(marks[1], marks[2], "another append, another mark");
    assert!(
        marks.iter().all(|&m| m < 1 << 53),
        "marks stay exact in JSON: {marks:?}"
    );
    assert_eq!(store.mark("crm", Seq(4)).unwrap(), None, "past the head");
    // The same ops again: stored once, their marks unchanged.
    append_ok(store, "crm", &[first, second].concat());
    assert_eq!(store.head("crm").unwrap(), 3);
    let again: Vec<u64> = (1..=3)
        .map(|seq| store.mark("crm", Seq(seq)).unwrap().expect("an op"))
        .collect();
    assert_eq!(again, marks);
    assert_missing(store.mark("nope", Seq(1)), "space", "nope");
}

pub fn an_op_id_reused_with_other_content_is_refused_alone<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(4);
    assert_eq!(append_ok(store, "crm", &ops[..1]), [1]);

    // Other change bytes under a known id: that op is refused, the rest of the batch is stored.
    let conflicting = altered(&ops[0]);
    let results = assert_conflict(append(store, "crm", &[ops[1].clone(), conflicting]), 1, &ops[0].op);
    assert_eq!(results[0], Ok(Seq(2)), "the other op of the batch is stored");
    assert_eq!(store.head("crm").unwrap(), 2);

    // Another envelope (record, time, actor, collection) under a known id is other content too.
    let mut moved = ops[0].clone();
    moved.op.record = RecordId::new("elsewhere").unwrap();
    assert_conflict(append(store, "crm", &[moved]), 0, &ops[0].op);
    let mut retimed = ops[0].clone();
    retimed.op.time_ms += 1;
    assert_conflict(append(store, "crm", &[retimed]), 0, &ops[0].op);
    let mut other_actor = ops[0].clone();
    other_actor.op.actor = ActorId([8; 16]);
    assert_conflict(append(store, "crm", &[other_actor]), 0, &ops[0].op);
    let mut other_collection = ops[0].clone();
    other_collection.op.collection = Collection::new("accounts").unwrap();
    assert_conflict(append(store, "crm", &[other_collection]), 0, &ops[0].op);
    assert_eq!(store.head("crm").unwrap(), 2, "refused ops take no seq");

    // A conflict with an op earlier in the same batch: the first copy is stored, the altered one refused.
    let inner = altered(&ops[2]);
    let results = assert_conflict(
        append(store, "crm", &[ops[2].clone(), ops[3].clone(), inner]),
        2,
        &ops[2].op,
    );
    assert_eq!(results[..2], [Ok(Seq(3)), Ok(Seq(4))]);
    assert_eq!(append_ok(store, "crm", &ops), [1, 2, 3, 4], "re-pushes keep their seqs");
    let all = everything(store, "crm");
    assert_eq!(seqs_of(&all), [1, 2, 3, 4]);
    assert_eq!(all.into_iter().map(|(_, op)| op).collect::<Vec<_>>(), ops);
}

pub fn a_duplicate_id_inside_one_batch_gets_the_first_seq<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(3);
    let batch = [
        ops[0].clone(),
        ops[1].clone(),
        ops[0].clone(),
        ops[1].clone(),
        ops[2].clone(),
    ];
    assert_eq!(append_ok(store, "crm", &batch), [1, 2, 1, 2, 3]);
    assert_eq!(store.head("crm").unwrap(), 3);
    assert_eq!(seqs_of(&everything(store, "crm")), [1, 2, 3]);
}

pub fn read_ops_pages_by_since_and_limit<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(10);
    append_ok(store, "crm", &ops);

    let page = |since, limit| seqs_of(&store.read_ops("crm", since, PageLimit::count(limit)).unwrap());
    assert_eq!(page(Seq(0), 3), [1, 2, 3]);
    assert_eq!(page(Seq(3), 3), [4, 5, 6]);
    assert_eq!(page(Seq(6), 3), [7, 8, 9]);
    assert_eq!(page(Seq(9), 3), [10]);
    assert_eq!(page(Seq(10), 3), Vec::<Seq>::new());
    // Exact multiples end with an empty page, never a repeated one.
    assert_eq!(page(Seq(0), 5), [1, 2, 3, 4, 5]);
    assert_eq!(page(Seq(5), 5), [6, 7, 8, 9, 10]);
    assert_eq!(page(Seq(10), 5), Vec::<Seq>::new());
    assert_eq!(page(Seq(0), 10), (1..=10).collect::<Vec<_>>());
    assert_eq!(page(Seq(0), 11), (1..=10).collect::<Vec<_>>());
    assert_eq!(page(Seq(4), 0), Vec::<Seq>::new());
    assert_eq!(page(Seq(11), 5), Vec::<Seq>::new());
    assert_eq!(page(Seq(1_000), 5), Vec::<Seq>::new());
    assert_eq!(page(Seq(u64::MAX), 5), Vec::<Seq>::new());

    // Walking with limit 1 meets every op once, in order, with its content.
    let mut since = Seq::ZERO;
    let mut walked = Vec::new();
    loop {
        let next = store.read_ops("crm", since, PageLimit::count(1)).unwrap();
        let Some((seq, op)) = next.into_iter().next() else {
            break;
        };
        assert_eq!(seq, since + 1);
        since = seq;
        walked.push(op);
    }
    assert_eq!(walked, ops);
}

pub fn the_ops_of_two_spaces_are_independent<S: ServerStore>(store: &S) {
    schemaless_space(store, "a");
    schemaless_space(store, "b");
    let ops = new_ops(3);
    assert_eq!(append_ok(store, "a", &ops[..2]), [1, 2]);
    assert_eq!(append_ok(store, "b", &ops[2..]), [1], "every space starts at seq 1");
    // An op id is deduplicated per space: the same op in another space is new there.
    assert_eq!(append_ok(store, "b", &ops[..1]), [2]);
    assert_eq!(append_ok(store, "a", &ops[2..]), [3]);
    // And other content under that id in another space is no conflict with the first.
    assert_eq!(append_ok(store, "b", &[altered(&ops[1])]), [3]);
    assert_eq!(store.head("a").unwrap(), 3);
    assert_eq!(store.head("b").unwrap(), 3);

    let a: Vec<StoredOp> = everything(store, "a").into_iter().map(|(_, op)| op).collect();
    let b: Vec<StoredOp> = everything(store, "b").into_iter().map(|(_, op)| op).collect();
    assert_eq!(a, [ops[0].clone(), ops[1].clone(), ops[2].clone()]);
    assert_eq!(b, [ops[2].clone(), ops[0].clone(), altered(&ops[1])]);

    // A space created later starts empty, whatever the others hold.
    schemaless_space(store, "c");
    assert_eq!(store.head("c").unwrap(), 0);
    assert!(everything(store, "c").is_empty());
    assert_eq!(append_ok(store, "c", &ops[..1]), [1]);
}

pub fn the_pushing_user_is_kept_with_each_op<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = [op("c1", b"one"), op("c2", b"two"), op("c3", b"three")];
    let batch = [
        stored(&ops[0], "ada"),
        stored(&ops[1], "bob"),
        stored(&ops[2], "ünïcode user"),
    ];
    append_ok(store, "crm", &batch);
    let all = everything(store, "crm");
    let users: Vec<&str> = all.iter().map(|(_, s)| s.user.as_str()).collect();
    assert_eq!(users, ["ada", "bob", "ünïcode user"]);
    assert_eq!(all.into_iter().map(|(_, s)| s).collect::<Vec<_>>(), batch);
}

pub fn real_automerge_ops_round_trip_byte_for_byte<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let replica = Replica::in_memory().unwrap();
    replica
        .put("contacts", "c1", json!({"name": "Ada", "visits": 1}))
        .unwrap();
    replica.put("contacts", "c2", json!({"name": "Bob"})).unwrap();
    replica
        .put("contacts", "c1", json!({"email": "ada@example.com"}))
        .unwrap();
    replica.delete("contacts", "c2").unwrap();
    replica
        .put("accounts", "a1", json!({"name": "Analytical Engines"}))
        .unwrap();
    let ops: Vec<StoredOp> = super::super::all_ops(&replica)
        .into_iter()
        .map(|remote| stored(&remote.op, "ada"))
        .collect();
    assert_eq!(ops.len(), 5);
    assert_eq!(append_ok(store, "crm", &ops), [1, 2, 3, 4, 5]);
    assert_eq!(append_ok(store, "crm", &ops), [1, 2, 3, 4, 5]);
    let back: Vec<StoredOp> = everything(store, "crm").into_iter().map(|(_, op)| op).collect();
    assert_eq!(back, ops);
}

pub fn a_missing_space_is_reported_as_missing<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(1);
    assert_missing(append(store, "nowhere", &ops), "space", "nowhere");
    assert_missing(append(store, "nowhere", &[]), "space", "nowhere");
    assert_missing(
        store.read_ops("nowhere", Seq(0), PageLimit::count(10)),
        "space",
        "nowhere",
    );
    assert_missing(store.head("nowhere"), "space", "nowhere");
    assert_missing(store.materialized("nowhere"), "space", "nowhere");
    assert_missing(
        store.store_docs("nowhere", &[doc("contacts", "c1", b"doc")], Seq(0), Seq(1)),
        "space",
        "nowhere",
    );
    assert_missing(store.doc("nowhere", "contacts", "c1"), "space", "nowhere");
    assert_missing(
        store.docs_page("nowhere", None, PageLimit::count(10)),
        "space",
        "nowhere",
    );
    assert_missing(store.set_package("nowhere", None), "space", "nowhere");
    assert_eq!(store.package("nowhere").unwrap(), None);
    // Nothing leaked into the space that exists.
    assert_eq!(store.head("crm").unwrap(), 0);
    assert!(
        store
            .docs_page("crm", None, PageLimit::count(10))
            .unwrap()
            .docs
            .is_empty()
    );
}

/// A change on record `r` by `actor` (one byte repeated), change number 1,
/// using counters `start..=max`, after `deps`, naming `named` ops of others.
fn change_on_r(actor: u8, start: u64, max: u64, deps: &[[u8; 32]], named: &[(u8, u64)]) -> NewOp {
    let stored = stored(&op("r", &[actor, start as u8]), "ada");
    NewOp {
        stored,
        header: ChangeHeader {
            hash: [actor; 32],
            actor: vec![actor; 16],
            seq: 1,
            start_op: start,
            max_op: max,
            deps: deps.to_vec(),
            named: named.iter().map(|&(a, counter)| (vec![a; 16], counter)).collect(),
        },
    }
}

pub fn an_op_naming_ops_its_record_lacks_is_refused_alone<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let refused_for_naming = |result: &Result<Seq, OpRefusal>, what: &str| {
        assert!(
            matches!(result, Err(OpRefusal::BadHeader(m)) if m.contains("names op") && m.contains("does not hold")),
            "{what}: {result:?}"
        );
    };
    let first = change_on_r(1, 1, 3, &[], &[]);
    let h1 = first.header.hash;
    // In one batch: an op of actor 1 named by a change after it is fine;
    // beyond actor 1's last counter, by an actor the record never had, or
    // by the change's own new actor, it is not.
    let results = store
        .append(
            "crm",
            &[
                first,
                change_on_r(2, 4, 4, &[h1], &[(1, 3)]),
                change_on_r(3, 5, 5, &[h1], &[(1, 4)]),
                change_on_r(4, 5, 5, &[h1], &[(9, 1)]),
                change_on_r(5, 5, 5, &[h1], &[(5, 2)]),
            ],
        )
        .unwrap();
    assert_eq!(results[..2], [Ok(Seq(1)), Ok(Seq(2))]);
    refused_for_naming(&results[2], "past actor 1's last op");
    refused_for_naming(&results[3], "an actor the record never had");
    refused_for_naming(&results[4], "an earlier op of a new actor");
    assert_eq!(store.head("crm").unwrap(), 2, "refused ops take no seq");
    // In a later batch: ops stored before are found, by every actor named.
    let results = store
        .append("crm", &[change_on_r(6, 5, 5, &[[2; 32]], &[(1, 2), (2, 4)])])
        .unwrap();
    assert_eq!(results, [Ok(Seq(3))]);
    // The same names on another record, which holds none of them, are refused.
    let mut elsewhere = change_on_r(7, 5, 5, &[], &[(1, 2)]);
    elsewhere.stored.op.record = RecordId::new("other").unwrap();
    let results = store.append("crm", &[elsewhere]).unwrap();
    refused_for_naming(&results[0], "ops of another record");
}
